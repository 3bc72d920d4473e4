"""Where capture resumes: checkpoint policy and start-position resolution (pure), over state/checkpoints.py."""
