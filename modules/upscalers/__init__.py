"""Image upscalers: the registry of model upscalers (ESRGAN family and everything spandrel recognises), the bundled
Real-ESRGAN weights converted from ncnn, and tiled inference."""
