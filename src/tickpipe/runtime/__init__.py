"""The pieces every runner is assembled from: store writer, engine stage, checkpoint, status
read model and clock. Nothing here imports a runner (tickpipe/runners/)."""
