import sys

try:                                 # Ctrl-C while the imports run: one line, exit 130, as everywhere else
    from .commands.cli import main
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    sys.exit(130)

sys.exit(main())
