"""Market-abuse surveillance: pure detectors, a faust app, alerts projection and STOR drafts."""
