"""The far side: the processes that import student code and answer a check's requests."""
