# The harness's own HellaSwag preprocessing, re-exported for the local task file.
from lm_eval.tasks.hellaswag.utils import process_docs  # noqa: F401
