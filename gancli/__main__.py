from gancli.cli import main

main()
