from vq.cli.app import main

main()
