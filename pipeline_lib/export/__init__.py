"""Ways out of Caffe's formats: ONNX export (`onnx_export`, extra `[onnx]`) and PyTorch
`state_dict` interchange (`torch_state`, extra `[torch]`). Both read nets and weights
through the engine; neither is needed by the rest of the package."""
