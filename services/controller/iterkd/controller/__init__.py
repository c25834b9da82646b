"""IterKD controller: runs distillation cycles stage by stage (local processes or Kubernetes Jobs)."""
