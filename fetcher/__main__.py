"""python -m fetcher: the same as the afetch command."""

from .process import main

if __name__ == "__main__":
    main()
