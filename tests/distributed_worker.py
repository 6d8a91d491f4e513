"""One process of tests/test_distributed.py: the real `jaxvad train` command line, with the rows
of every batch it reads recorded.

Run as `python -m tests.distributed_worker train ...` (the arguments of `jaxvad train`; the
tests' method `tiny_test` is registered as in tests/conftest.py). With JAXVAD_TEST_BATCHES set
to a path holding `{process}`, each batch this process takes from the pipeline appends one JSON
line `{"batch": k, "rows": [hash of each row's frames, ...]}` to that path, `{process}`
replaced by `jax.process_index()`.
"""

import hashlib
import json
import os
import sys


def recording_prefetch(prefetch, path_template: str):
  """`prefetch` (`jaxvad.data.pipeline.prefetch`, which the trainer calls) that also records
  each batch as it is taken: its index k and a hash of each row's frames."""
  import jax

  def recording(ds, *, start_step=0, **kwargs):
    path = path_template.format(process=jax.process_index())
    for k, batch in enumerate(prefetch(ds, start_step=start_step, **kwargs), start_step):
      rows = [hashlib.sha1(row.tobytes()).hexdigest()[:16] for row in batch["frames"]]
      with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"batch": k, "rows": rows}) + "\n")
      yield batch

  return recording


def read_batches(path) -> dict[int, list[str]]:
  """What `recording_prefetch` wrote: batch index -> row hashes."""
  with open(path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  return {r["batch"]: r["rows"] for r in records}


def main() -> int:
  from jaxvad import cli, methods
  from jaxvad.data import pipeline
  if os.environ.get("JAXVAD_TEST_BATCHES"):
    pipeline.prefetch = recording_prefetch(pipeline.prefetch, os.environ["JAXVAD_TEST_BATCHES"])
  methods.register("tiny_test", "tests.tiny_method")   # as tests/conftest.py does
  return cli.main(sys.argv[1:])


if __name__ == "__main__":
  sys.exit(main())
