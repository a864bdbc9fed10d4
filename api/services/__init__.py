"""What the routes call: validation and persistence of uploads and jobs, kept out of the routers."""
