// Where gi-docgen links the types of other namespaces to.
baseURLs = [
  [ 'GLib', 'https://docs.gtk.org/glib/' ],
  [ 'GLibUnix', 'https://docs.gtk.org/glib-unix/' ],
  [ 'GObject', 'https://docs.gtk.org/gobject/' ],
  [ 'Gio', 'https://docs.gtk.org/gio/' ],
  [ 'GioUnix', 'https://docs.gtk.org/gio-unix/' ],
]
