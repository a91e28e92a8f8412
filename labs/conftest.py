# Every lab's grader tests use the fixtures and markers of grading.plugin (see docs/ARCHITECTURE.md).
pytest_plugins = ["grading.plugin"]
