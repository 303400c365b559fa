"""LangGraph wiring: the paper's fixed pipeline (and later the agent and the chat), over the tools."""
