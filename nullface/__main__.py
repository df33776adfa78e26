import signal
import sys

# Ctrl-C from the first instant: while torch, numpy and diffusers import, an interrupt can surface as another
# exception (numpy turns it into an ImportError), so the press itself is recorded.
pressed = []


def _stop(signum, frame):
    pressed.append(signum)
    raise KeyboardInterrupt


signal.signal(signal.SIGINT, _stop)
try:
    from .commands.cli import main
    code = main()
except SystemExit:
    raise
except BaseException as exc:
    if not (pressed or isinstance(exc, KeyboardInterrupt)):
        raise
    sys.stderr.write("interrupted\n")
    code = 130
sys.exit(code)
