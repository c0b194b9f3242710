# Training jobs arrive with the training issue; the app is here so the layout is complete.
