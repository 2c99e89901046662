"""`python -m synthaudit`: the command line (the same as the `synthaudit` command)."""

from synthaudit.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
