"""visloupe.core: computation only (torch, captum, numpy, datasets, safetensors).

Never imports ipywidgets, anywidget, bokeh or matplotlib.pyplot; widgets call into it.
"""
