# The harness's own WikiText detokenizer and document-level word/byte counting, re-exported.
from lm_eval.tasks.wikitext.preprocess_wikitext import process_results, wikitext_detokenizer  # noqa: F401
