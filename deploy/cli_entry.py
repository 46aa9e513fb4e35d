"""`python -m deploy.cli_entry`: the CLI without depending on the console script's PATH."""

from deploy.cli import main

if __name__ == "__main__":
    main()
