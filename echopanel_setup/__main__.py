"""`python -m echopanel_setup` runs the same CLI as the `echopanel-setup` console script."""

from echopanel_setup.cli import main

if __name__ == "__main__":
    main()
