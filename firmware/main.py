# Board entry point: a Pico W runs /main.py at boot; the unix port runs this file directly.
import app

app.main()
