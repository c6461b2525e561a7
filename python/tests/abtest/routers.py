class RecordingRouter:
    """Sends writes of Metric to the "other" alias and records every call,
    so tests can see that the helpers consult routers."""

    calls = []

    def db_for_write(self, model, **hints):
        self.calls.append(model.__name__)
        if model.__name__ == "Metric":
            return "other"
        return None
