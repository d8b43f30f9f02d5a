"""Training kit: FER2013 / FER+ data, the trainer, evaluation and reports."""
