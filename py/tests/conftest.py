# A machine that cannot trace skips the live tests with the reason (grading.plugin), never passes them.
pytest_plugins = ["grading.plugin"]
