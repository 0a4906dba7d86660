from bioseg.cli import main

main()
