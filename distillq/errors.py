"""Error types the CLI turns into a one-line message and an exit code."""


class DistillqError(Exception):
    """Bad usage or bad input: the CLI prints one line and exits with code 2."""

    exit_code = 2


class ConfigError(DistillqError):
    """A config file, key or value is invalid."""


class RunDirError(DistillqError):
    """A run directory is missing, incomplete, corrupted or of the wrong kind."""


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after writing a resumable checkpoint (exit 130)."""

    exit_code = 130

    def __init__(self, run_dir: str, resume_cmd: str):
        super().__init__(f"interrupted; resume with: {resume_cmd}")
        self.run_dir = run_dir
        self.resume_cmd = resume_cmd


class ParityError(DistillqError):
    """An exported artefact disagrees with distillq's own forward pass (nothing is written)."""

    exit_code = 1


class DivergedError(DistillqError):
    """Loss or parameters became NaN/Inf."""

    exit_code = 1


class WriteError(DistillqError):
    """An output could not be written (full disk, read-only filesystem); nothing was replaced."""

    exit_code = 1
