"""A local stand-in for antirez/voxtral.c: a git repository holding a tiny C program of our own and a Makefile with
`mps` and `blas` targets, built for real with the system compiler.

Nothing of voxtral.c's code is copied; the program behaves like its `main.c` does at its edges (read with `fetch`
at 134d366, 2026-02-15), because those edges are what EchoPanel's `voxtral_realtime` provider and our own code meet:

- `-h` / `--help`: usage on stderr (a line starting `Usage:`), exit 0; an unknown option: usage, exit 1;
- `-d MODEL --stdin [-I SECS] [--silent]`: the model directory must hold `consolidated.safetensors` (else
  "Failed to load model from MODEL", exit 1); without `--silent` it prints "Loading weights..." and "Model loaded."
  to stderr (verbosity 1), with `--silent` (verbosity 0) nothing at all on stderr;
- stdin is raw PCM16 16 kHz mono read with `fread` exactly as voxtral.c reads it (a first 4096-byte block, then
  blocks of 4096 samples: a pipe that stops mid-block leaves the reader waiting, as the real one does);
- tokens go to stdout with `fputs` + `fflush`, NO newline, the first one without its leading space; one `\\n` only
  when stdin reaches end of file; exit 0.

Deterministic transcripts: the text is the file `standin-transcript.txt` in the model directory (or the variable
`VOXTRAL_STANDIN_TEXT`), one word per `VOXTRAL_STANDIN_SECONDS_PER_WORD` seconds of audio (default 0.5; word k
covers [k*s, (k+1)*s)). Audio is "encoded" every `-I` seconds (default 2.0, voxtral.c's default): at each interval
boundary the words whose audio has fully arrived are printed; at end of input every word that started is printed.
`VOXTRAL_STANDIN_LOAD_MS` sleeps that long before "Model loaded." (a slow model load); with
`VOXTRAL_STANDIN_LOAD_UNTIL_FULL` set, the load also lasts until the writer has filled the stdin pipe, as a real
load of seconds always does (a fixed sleep alone races a writer that a loaded machine schedules late).
`VOXTRAL_STANDIN_RTF` makes each block of audio take that fraction of its duration to process (default: none), so a
writer outruns it as it outruns the real one. Every start appends one line `pid=<pid> args=<argv...>` to
`standin-runs.log` in the model directory, so tests can count processes.

    repo = make_repo(tmp_path / "voxtral.c")            # a git repository with one commit
    binary = build(repo, "blas")                          # runs `make blas`, returns repo / "voxtral"
    model = make_model(tmp_path / "model", "hello from the stand in")
    subprocess.run([binary, "-d", model, "--stdin", "-I", "1.0", "--silent"], input=pcm, capture_output=True)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

#: the transcript file the stand-in reads from its model directory
TRANSCRIPT_FILE = "standin-transcript.txt"
#: one line per process start, in the model directory
RUNS_LOG = "standin-runs.log"
#: bytes per second of PCM16 16 kHz mono
BYTES_PER_SECOND = 32000

SOURCE = r"""/* voxtral.c stand-in for echopanel-setup's tests: our own code, voxtral.c's I/O behaviour. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define RATE 16000
#define MAX_WORDS 4096

static char *words[MAX_WORDS];
static int n_words = 0, next_word = 0, first = 1;

static void usage(const char *prog) {
    fprintf(stderr, "voxtral stand-in (" BACKEND ")\n\n");
    fprintf(stderr, "Usage: %s -d <model_dir> --stdin [-I <secs>] [--silent]\n\n", prog);
    fprintf(stderr, "  -d <dir>   model directory (consolidated.safetensors, " "standin-transcript.txt)\n");
    fprintf(stderr, "  --stdin    raw s16le 16 kHz mono on stdin\n");
    fprintf(stderr, "  -I <secs>  encoder processing interval (default: 2.0)\n");
    fprintf(stderr, "  --silent   no status output\n");
    fprintf(stderr, "  -h         this help\n");
}

static void load_words(const char *dir) {
    static char text[65536];
    const char *env = getenv("VOXTRAL_STANDIN_TEXT");
    size_t len = 0;
    if (env) {
        strncpy(text, env, sizeof(text) - 1);
        len = strlen(text);
    } else {
        char path[4096];
        snprintf(path, sizeof(path), "%s/standin-transcript.txt", dir);
        FILE *f = fopen(path, "rb");
        if (f) {
            len = fread(text, 1, sizeof(text) - 1, f);
            fclose(f);
        }
    }
    text[len] = 0;
    for (char *w = strtok(text, " \t\r\n"); w && n_words < MAX_WORDS; w = strtok(NULL, " \t\r\n"))
        words[n_words++] = w;
}

/* print the words whose audio ends at or before `seconds` (all that started when `at_end`) */
static void emit(double seconds, double per_word, int at_end) {
    int printed = 0;
    while (next_word < n_words) {
        double start = next_word * per_word, end = start + per_word;
        if (at_end ? start >= seconds : end > seconds + 1e-9) break;
        if (!first) fputc(' ', stdout);
        fputs(words[next_word++], stdout);
        first = 0;
        printed = 1;
    }
    if (printed) fflush(stdout);
}

int main(int argc, char **argv) {
    const char *model = NULL;
    int use_stdin = 0, verbosity = 1;
    double interval = 2.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "-I") && i + 1 < argc) {
            interval = atof(argv[++i]);
            if (interval <= 0) {
                fprintf(stderr, "Error: -I needs a positive number of seconds\n");
                return 1;
            }
        } else if (!strcmp(argv[i], "--stdin")) use_stdin = 1;
        else if (!strcmp(argv[i], "--silent")) verbosity = 0;
        else if (!strcmp(argv[i], "--debug")) verbosity = 2;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(argv[0]);
            return 0;
        } else {
            fprintf(stderr, "Unknown option: %s\n", argv[i]);
            usage(argv[0]);
            return 1;
        }
    }
    if (!model || !use_stdin) {
        usage(argv[0]);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/standin-runs.log", model);
    FILE *runs = fopen(path, "a");
    if (runs) {
        fprintf(runs, "pid=%ld args=", (long)getpid());
        for (int i = 1; i < argc; i++) fprintf(runs, "%s%s", i > 1 ? " " : "", argv[i]);
        fputc('\n', runs);
        fclose(runs);
    }
    snprintf(path, sizeof(path), "%s/consolidated.safetensors", model);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "vox_load: cannot open %s\n", path);
        fprintf(stderr, "Failed to load model from %s\n", model);
        return 1;
    }
    if (verbosity >= 1) fprintf(stderr, "Loading weights...\n");
    const char *load_ms = getenv("VOXTRAL_STANDIN_LOAD_MS");
    if (load_ms) {
        long ms = atol(load_ms);
        struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&t, NULL);
    }
    if (getenv("VOXTRAL_STANDIN_LOAD_UNTIL_FULL")) {
        int capacity = 65536, waiting = 0;
#ifdef F_GETPIPE_SZ
        int size = fcntl(0, F_GETPIPE_SZ);
        if (size > 0) capacity = size;
#endif
        struct timespec tick = {0, 5000000L};
        for (int i = 0; i < 12000 && ioctl(0, FIONREAD, &waiting) == 0 && waiting < capacity; i++)
            nanosleep(&tick, NULL);
    }
#ifdef USE_METAL
    if (verbosity >= 2) fprintf(stderr, "Metal: stand-in device\n");
#endif
    if (verbosity >= 1) fprintf(stderr, "Model loaded.\n");
    load_words(model);
    const char *pw = getenv("VOXTRAL_STANDIN_SECONDS_PER_WORD");
    double per_word = pw ? atof(pw) : 0.5;
    if (per_word <= 0) per_word = 0.5;
    const char *rtf_env = getenv("VOXTRAL_STANDIN_RTF");
    double rtf = rtf_env ? atof(rtf_env) : 0.0;

    long samples = 0, encoded = 0, step = (long)(interval * RATE);
    unsigned char head[4096];
    size_t got = fread(head, 1, sizeof(head), stdin);
    if (got < 4) {
        fprintf(stderr, "Not enough data on stdin\n");
        return 1;
    }
    samples += (long)(got / 2);
    for (;;) {
        while (samples - encoded >= step) {
            encoded += step;
            emit((double)encoded / RATE, per_word, 0);
        }
        short block[4096];
        size_t n = fread(block, sizeof(short), 4096, stdin);
        if (n == 0) break;
        samples += (long)n;
        if (rtf > 0) {
            double busy = rtf * (double)n / RATE;
            struct timespec t = {(time_t)busy, (long)((busy - (time_t)busy) * 1e9)};
            nanosleep(&t, NULL);
        }
    }
    emit((double)samples / RATE, per_word, 1);
    fputs("\n", stdout);
    fflush(stdout);
    return 0;
}
"""

MAKEFILE = """# voxtral.c stand-in (echopanel-setup tests): `make mps` or `make blas`, like the real one.
CC = gcc
CFLAGS = -Wall -O1

.PHONY: all blas mps clean

all:
\t@echo "Choose a backend: make blas | make mps"

blas: clean
\t$(CC) $(CFLAGS) -DUSE_BLAS -DBACKEND='"blas"' -o voxtral main.c
\t@echo ""
\t@echo "Built with BLAS backend"

mps: clean
\t$(CC) $(CFLAGS) -DUSE_BLAS -DUSE_METAL -DBACKEND='"mps"' -o voxtral main.c
\t@echo ""
\t@echo "Built with MPS backend (Metal GPU acceleration)"

clean:
\trm -f voxtral *.o
"""

#: a line the C compiler refuses, for build-failure tests
BROKEN = "int main(void) { return undefined_symbol_here; }\n"


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "stand-in",
        "GIT_AUTHOR_EMAIL": "stand-in@example.invalid",
        "GIT_COMMITTER_NAME": "stand-in",
        "GIT_COMMITTER_EMAIL": "stand-in@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def make_repo(root: Path, *, broken: bool = False) -> Path:
    """A git repository at `root` with the stand-in's `main.c`, `Makefile` and `.gitignore` in one commit.

    `broken=True` commits a `main.c` the compiler refuses (its first error names `undefined_symbol_here`).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.c").write_text(BROKEN if broken else SOURCE)
    (root / "Makefile").write_text(MAKEFILE)
    (root / ".gitignore").write_text("voxtral\n*.o\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "stand-in voxtral.c")
    return root


def head(repo: Path) -> str:
    """The full commit id checked out in `repo`."""
    return _git(repo, "rev-parse", "HEAD")


def add_commit(repo: Path, note: str = "another commit") -> str:
    """Commit a README line plus whatever else changed in the work tree (e.g. a `main.c` the test rewrote); return
    the new commit id: for "rebuild when the commit changed"."""
    readme = repo / "README.md"
    readme.write_text((readme.read_text() if readme.exists() else "") + note + "\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", note)
    return head(repo)


def build(repo: Path, target: str = "blas") -> Path:
    """Run `make <target>` (`blas` or `mps`) in `repo` with the system compiler; return the binary's path."""
    subprocess.run(["make", target], cwd=repo, check=True, capture_output=True)
    return repo / "voxtral"


def make_model(root: Path, text: str = "", *, safetensors: bool = True) -> Path:
    """A model directory the stand-in accepts: `consolidated.safetensors`, `tekken.json` and the transcript.

    The two model files are tiny placeholders (the stand-in only checks that the first exists); `safetensors=False`
    leaves it out, so the binary fails to load the model as voxtral.c does.
    """
    root.mkdir(parents=True, exist_ok=True)
    if safetensors:
        (root / "consolidated.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (root / "tekken.json").write_text("{}\n")
    (root / TRANSCRIPT_FILE).write_text(text + "\n")
    return root


def runs(model: Path) -> list[str]:
    """The process starts the stand-in recorded in `model` (one line each: `pid=N args=...`)."""
    log = model / RUNS_LOG
    return log.read_text().splitlines() if log.exists() else []


def pcm(seconds: float, *, amplitude: int = 3000) -> bytes:
    """`seconds` of PCM16 16 kHz mono (a square wave: the stand-in does not listen, it counts samples)."""
    samples = int(seconds * 16000)
    high = amplitude.to_bytes(2, "little", signed=True)
    low = (-amplitude).to_bytes(2, "little", signed=True)
    return b"".join(high if (i // 20) % 2 else low for i in range(samples))


def compiler_available() -> bool:
    """Whether `make` and gcc (the compiler voxtral.c's Makefile names) are on PATH: tests that build skip without."""
    return shutil.which("make") is not None and shutil.which("gcc") is not None
