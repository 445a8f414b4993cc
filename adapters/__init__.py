"""One module or package per outside system, each behind a port that ``gateway`` owns."""
