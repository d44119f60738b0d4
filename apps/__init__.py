"""streamrt.apps: the live webcam web demo, offline replay reports and client examples."""
