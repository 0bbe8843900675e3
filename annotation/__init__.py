"""Label Studio side of the pipeline: server, projects, task sync, agreement, adjudication, reports."""
