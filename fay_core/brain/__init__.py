"""The brain: the agent, its answerers (LLM, offline), history and turns."""
