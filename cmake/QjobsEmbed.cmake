# qjobs_embed(OUT FUNC DIR PATTERNS...): a custom command writing OUT, a C++
# source that defines qjobs::server::FUNC() with the bytes of every file in
# DIR matching PATTERNS (globs, sorted by name; see embed_files.cmake).
# Used for the dashboard and the recipes by server/ and tests/fuzz/ alike,
# so that a new file in either folder needs no line anywhere.
set(QJOBS_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/embed_files.cmake)

function(qjobs_embed out func dir)
  set(paths "")
  foreach(pattern IN LISTS ARGN)
    file(GLOB found CONFIGURE_DEPENDS ${dir}/${pattern})
    list(APPEND paths ${found})
  endforeach()
  set(names "")
  foreach(p IN LISTS paths)
    get_filename_component(n ${p} NAME)
    list(APPEND names ${n})
  endforeach()
  list(SORT names)
  list(SORT paths)
  string(REPLACE ";" "," arg "${names}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DDIR=${dir} -DOUT=${out} "-DFILES=${arg}" -DFUNC=${func} -P ${QJOBS_EMBED_SCRIPT}
    DEPENDS ${paths} ${QJOBS_EMBED_SCRIPT}
    COMMENT "Embedding ${dir}")
endfunction()
