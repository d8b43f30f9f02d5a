"""The GPU sprint: a plan of training jobs run concurrently on a lent GPU inside a budget, its data and results in checked parts, and the import home (`python -m training.sprint`)."""
