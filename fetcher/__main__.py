"""python -m fetcher: the same as the afetch command."""

from .cli import main

if __name__ == "__main__":
    main()
