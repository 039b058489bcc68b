from mindie_pack.cli import main

main()
