from cdc_repair.cli import main

main()
