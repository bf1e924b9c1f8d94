from fmnist_edge.cli import main

main()
