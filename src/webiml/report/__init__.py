"""The papers' figures and tables and the claim verdicts, from the pipeline's outputs (the report stage)."""
