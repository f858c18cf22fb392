"""The GAN systems, one package each (pygan/<name>/, whose cli.py has register(train_commands, commands)): the one
list that the `pygan` command, the layering test (tests/test_layout.py) and the benchmark suites (benchmarks/<name>.py
where a system has one) read. Adding a system is one line here. No imports: anything may read it."""

SYSTEMS = (
    "dcgan",
    "sr",
    "cyclegan",
    "segmentation",
    "text2image",
    "pix2pix",
    "template",
)
