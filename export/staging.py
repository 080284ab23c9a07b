"""Atomic export: build a whole repository in a staging folder, move it into place only when complete."""

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_repository(repository: Path, keep: tuple[str, ...] = ()):
    """Yield an empty staging folder beside `repository` (same file system, so renames are atomic),
    seeded with the files named in `keep` from the existing repository (e.g. a reusable cache).

    On success the staging folder replaces the repository; on any exception it is deleted and the
    existing repository is left exactly as it was.
    """
    repository = Path(repository)
    repository.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{repository.name}.staging-", dir=repository.parent))
    try:
        for name in keep:
            if (repository / name).is_file():
                shutil.copy2(repository / name, staging / name)
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = repository.with_name(staging.name.replace(".staging-", ".previous-"))
    if repository.exists():
        repository.rename(previous)
    staging.rename(repository)
    shutil.rmtree(previous, ignore_errors=True)
