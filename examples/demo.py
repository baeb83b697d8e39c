"""`make demo`: watch attention form while the date example trains.

Starts TensorBoard on localhost (port 6006, or the next free one) keeping every logged
step, prints the address of its Attention tab, trains the date-translation example with
a progress bar while `AttentionLogger` writes the probe dates' attention every few
steps, then keeps TensorBoard serving until Ctrl-C.

    python examples/demo.py --logdir runs --port 6006 [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

_URL_RE = re.compile(r"https?://[^\s]+:(\d+)/")
# Watching attention form needs more frames than one per epoch: the example converges
# within its first epoch.
DEFAULT_LOG_EVERY_STEPS = 25


def free_port(first: int, host: str = "localhost", tries: int = 100) -> int:
    """`first`, or the next port after it that nothing listens on."""
    for port in range(first, first + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                continue  # something answers there
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((socket.gethostbyname(host), port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}..{first + tries - 1}")


class TensorBoardProcess:
    """TensorBoard in a child process, so that it keeps its own CPU share and GIL."""

    def __init__(self, logdir: str, port: int, host: str = "localhost"):
        args = [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            logdir,
            "--host",
            host,
            "--port",
            str(port),
            # Every logged step stays browsable (TensorBoard keeps 10 per tag by default).
            # images=0 would make the Images tab show none: it reads 0 as "no images".
            "--samples_per_plugin",
            "attention=0,images=100000",
            "--reload_interval",
            "5",
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.output: list[str] = []
        self.port = self._wait_until_serving(timeout=180)
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_until_serving(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                if self.process.poll() is not None:
                    break
                continue
            self.output.append(line)
            match = _URL_RE.search(line)
            if match:
                return int(match.group(1))
        self.stop()
        raise RuntimeError("TensorBoard did not start:\n" + "".join(self.output[-30:]))

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _interrupt(signum, frame):
    """SIGTERM (from a process manager, or a test) ends the demo as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", default="runs", help="TensorBoard log directory")
    parser.add_argument(
        "--port", type=int, default=6006, help="first port to try (the next free one is used)"
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None, help="training dates")
    parser.add_argument("--test-samples", type=int, default=1000, help="held-out dates")
    parser.add_argument("--log-every-steps", type=int, default=DEFAULT_LOG_EVERY_STEPS)
    parser.add_argument("--model", default=None, help="where to save the trained model")
    parser.add_argument("--verbose", type=int, default=1, help="Keras fit verbosity")
    args = parser.parse_args(argv)

    print("starting TensorBoard ...", flush=True)
    os.makedirs(args.logdir, exist_ok=True)
    board = TensorBoardProcess(args.logdir, free_port(args.port))
    url = f"http://localhost:{board.port}/#attention"
    print(f"\nAttention tab: {url}\n", flush=True)

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        import date_translation as example  # TensorFlow loads here, after TensorBoard

        run = example.run_name()
        options = {}
        if args.epochs is not None:
            options["epochs"] = args.epochs
        if args.samples is not None:
            options["samples"] = args.samples
        if args.model is not None:
            options["model_path"] = args.model
        example.train(
            log_dir=os.path.join(args.logdir, run),
            test_samples=args.test_samples,
            log_every_steps=args.log_every_steps,
            verbose=args.verbose,
            **options,
        )
        print(
            f"\ntraining done. TensorBoard keeps serving at {url}; press Ctrl-C to stop.",
            flush=True,
        )
        print(
            'Translate a date: python examples/date_translation.py --translate "3rd of March 1999"',
            flush=True,
        )
        while board.process.poll() is None:
            time.sleep(0.5)
        print("TensorBoard stopped:\n" + "".join(board.output[-20:]), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping TensorBoard.", flush=True)
        return 0
    finally:
        board.stop()


if __name__ == "__main__":
    sys.exit(main())
