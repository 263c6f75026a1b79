"""`python -m services.cli …` is `kalo …`."""

from services.entry import main

main()
