"""The instructors' kit (docs/instructors/): its handout, and the check that keeps it true.

    python -m kit handout            make handout: build/handout/handout.html, and handout.pdf with Chromium
    python -m kit handout --no-pdf   the HTML only
    python -m kit check              every `make TARGET` and every path the kit names exists

handout.py  docs/instructors/handout.md -> one A4 page, with the deck's Marp and Chromium (py/deck)
refs.py     what the kit's pages name: make targets (against the Makefile's rules), repository paths
"""
