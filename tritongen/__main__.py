from tritongen.cli import main

main()
