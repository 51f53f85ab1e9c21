from latentbench.cli import main

main()
