"""The workshop's slides: slides/deck.md, expanded and built with Marp into build/slides/.

    python -m deck build            make slides: deck.html (the workshop) and talk.html (the talk alone),
                                    each self-contained, and their PDFs with Chromium
    python -m deck check            make test: build, then check references, notes, offline, and measure
                                    in Chromium what a hall sees (code size, the controls, headings)
    python -m deck check --shot 12  also render slide 12 to build/slides/shot-slide12.png

include.py  code samples come from the repo's files (`<!-- include: path#Name -->`), never a lab's answer
machine.py  the "your machine says" slides, from `make reveal` and `make bench` output
build.py    expansion, the two editions, `npm ci` when needed, Marp
check.py    what `make test` checks
"""
