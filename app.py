"""Continuity: ``python app.py`` starts the studio in the browser; ``python app.py --help`` lists the commands."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
