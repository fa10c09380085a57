from tickpipe.cli import main

main()
