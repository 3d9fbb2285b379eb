from sdfarm.cli.main import main

main()
