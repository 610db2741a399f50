from tritongen.entry import run

run()
