from systraq.cli import main

main()
