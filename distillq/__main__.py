"""The `distillq` entry point: signal handling first, then the CLI (distillq.cli)."""


def main() -> None:
    from distillq.runs import signals

    signals.install()   # before anything slow is imported: a Ctrl-C now is handled too
    from distillq.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
