"""DeepID nets and their files: the architecture and input size (architecture.py), the nets this
package knows (registry.py), model files read without running their code (model_io.py), a loaded
net (net.py) and its ONNX fast path (fast_net.py), a repaired net on disk with its stamped record
(repaired.py), and fetching the BadNets (fetch_models.py)."""
