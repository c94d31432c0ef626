package api

import "github.com/labstack/echo/v4"

func (s *server) disks() echo.HandlerFunc { return notImplemented }

func (s *server) disk() echo.HandlerFunc { return notImplemented }

func (s *server) internalDisk() echo.HandlerFunc { return notImplemented }

func (s *server) diskSnap() echo.HandlerFunc { return notImplemented }
